"""Report writers: the HTML pages, console tables and run headers of every command."""

"""Exit statuses of every command: 0 success, 1 refused or failed, 2 bad usage."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

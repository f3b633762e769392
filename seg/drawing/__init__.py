"""Pictures' canvas, class colours and PNG saver."""

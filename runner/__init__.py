"""bulkops: an asynchronous, resumable bulk-deletion job runner for Twilio APIs."""

__version__ = "0.1.0"

"""talkfarm pipeline: request/result schemas, the stage interface, runners and the CLI."""

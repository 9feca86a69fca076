"""Live grid signals: demand-response events and peak alerts from a polled URL or a
watched file, parsed into `GridMessage`s (the webhook receiver lives in the runtime,
on the controller's HTTP port)."""

"""Market data: live public APIs (`live`), recorded files (`recorded`), and the recorder
that turns the first into the second (`recorder`)."""

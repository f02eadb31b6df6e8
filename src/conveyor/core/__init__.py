"""Pure domain logic: job states, argument schemas, progress maths. No I/O, no frameworks."""

//! API requests, responses and error bodies.

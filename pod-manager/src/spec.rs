//! Pod spec to runtime config.

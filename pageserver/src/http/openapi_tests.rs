//! Checks the OpenAPI document against the route table (placeholder; being written).

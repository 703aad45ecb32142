//! PostgreSQL wire protocol (being written).

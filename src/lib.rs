//! hydrowatch

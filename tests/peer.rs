//! Profiles for the public peer samples in ../shared/reference.

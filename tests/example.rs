//! The bundled example: examples/students.csv with examples/students.toml.

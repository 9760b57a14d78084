//! Generated extracts checked against the generator's ground truth.

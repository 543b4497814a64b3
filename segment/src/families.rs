//! Counter families declared once.

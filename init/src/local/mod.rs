//! Local directories and configuration layers (DESIGN §5).

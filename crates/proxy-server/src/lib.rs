//! proxy-server: the hyper + tower stack (being built).

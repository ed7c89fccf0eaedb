//! The diskless client: one function per boot stage, called in order from `boot()`.

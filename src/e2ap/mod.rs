//! E2AP: envelope peek and full codec.

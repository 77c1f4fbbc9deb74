//! Kernel SCTP transport (one-to-one style sockets). Implemented in a later commit.

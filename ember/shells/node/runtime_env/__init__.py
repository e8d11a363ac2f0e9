"""The node daemon's side of runtime environments: set each distinct env up once, for its workers."""

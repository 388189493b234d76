"""HTTP layer: one blueprint per resource, thin views."""

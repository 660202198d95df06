"""The project's own .proto files (typed execution details, query service) and their
generated code. Empty until the first of them lands.
"""

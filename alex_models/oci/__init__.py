"""OCI registries: ``registry`` speaks the distribution API for one repository, ``auth`` answers
its challenges with the container tools' credentials, ``modelpack`` makes the artifacts ``push``
publishes. ``remotes.oci`` and ``sources.oci`` use them; docs/reference/oci.md describes the format.
"""

from alex_models.oci.registry import Address, Registry

__all__ = ["Address", "Registry"]

"""OCI registries: ``registry`` speaks the distribution API for one repository, ``auth`` answers
its challenges with the container tools' credentials, ``modelpack`` makes the artifacts ``push``
publishes, ``artifact`` reads the model artifacts ``oci:`` entries of models.yaml lock.
``remotes.oci``, ``sources.oci`` and the api use them; docs/reference/oci.md describes the formats.
"""

from alex_models.oci.registry import Address, Registry

__all__ = ["Address", "Registry"]

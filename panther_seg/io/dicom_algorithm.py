"""The model named in every DICOM result: the algorithm identification of a SEG's segments and
of an SR's measurement groups and device observer, made from one ``ModelProvenance``.

AlgorithmName (LO, 64 characters) says "DEMONSTRATION - not for real scans" for a demonstration
checkpoint, so that a PACS shows it wherever it shows the algorithm; AlgorithmVersion is the
package's version; AlgorithmParameters carry the provenance (checkpoint, trained on, when,
training code, demonstration, note). highdicom writes the parameters as ``key=value`` joined by
commas, so commas and equals signs in the values are replaced (by ';' and ':')."""
from __future__ import annotations

import highdicom as hd
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ..results import ModelProvenance

ALGORITHM_NAME = "PANTHER SegFormer3D"
DEMONSTRATION_NAME = f"{ALGORITHM_NAME} DEMONSTRATION - not for real scans"
MANUFACTURER = "PANTHER"
ARTIFICIAL_INTELLIGENCE = Code("123110", "DCM", "Artificial Intelligence")  # CID 7162, as highdicom's codes give it
NOTE_CHARACTERS = 2000  # of the checkpoint's note, in the parameters (AlgorithmParameters is LT: 10240 at most)


def algorithm_name(model: ModelProvenance | None) -> str:
    return DEMONSTRATION_NAME if model is not None and model.demonstration else ALGORITHM_NAME


def algorithm_parameters(model: ModelProvenance | None) -> dict[str, str]:
    """The provenance as AlgorithmParameters (none without a model: the SEG then says only the name)."""
    if model is None:
        return {}
    values = {
        "checkpoint": " + ".join(model.checkpoints),
        "trained_on": model.trained_on,
        "trained": model.trained_when,
        "training_code": model.code_revision,
        "demonstration": "yes: trained on synthetic data; not a model for real scans" if model.demonstration else "no",
    }
    if model.note:
        values["note"] = model.note[:NOTE_CHARACTERS]
    return {key: value.replace(",", ";").replace("=", ":") for key, value in values.items()}


def seg_algorithm(version: str, model: ModelProvenance | None) -> hd.AlgorithmIdentificationSequence:
    """A SEG segment's SegmentationAlgorithmIdentificationSequence."""
    return hd.AlgorithmIdentificationSequence(name=algorithm_name(model), family=ARTIFICIAL_INTELLIGENCE, version=version,
                                              source=MANUFACTURER, parameters=algorithm_parameters(model) or None)


def sr_algorithm(version: str, model: ModelProvenance | None) -> hd.sr.AlgorithmIdentification:
    """An SR measurement group's algorithm identification (TID 4019), the same as the SEG's."""
    return hd.sr.AlgorithmIdentification(name=algorithm_name(model), version=version,
                                         parameters=[f"{k}={v}" for k, v in algorithm_parameters(model).items()] or None)


def device_observer(version: str, model: ModelProvenance | None) -> hd.sr.ObserverContext:
    """The SR's observer: the algorithm as a device, with a UID that is the same for the same
    model (derived from its provenance), so that reports by one model can be found together."""
    identity = [algorithm_name(model), version, *(f"{k}={v}" for k, v in algorithm_parameters(model).items())]
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=identity), name=algorithm_name(model), manufacturer_name=MANUFACTURER,
            model_name=ALGORITHM_NAME, serial_number=version))

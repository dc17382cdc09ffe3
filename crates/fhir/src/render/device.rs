//! A device's reading as FHIR R4: an Observation in the shape of the HL7 Personal Health Device
//! guide's numeric observation (vital-signs category, LOINC code, a UCUM quantity, the device
//! that measured it).

use serde_json::{Value, json};

use crate::time::instant;

/// The PHD guide's profile for a numeric observation.
pub const PHD_NUMERIC_PROFILE: &str =
    "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdNumericObservation";

/// One reading, as a device sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceReading<'a> {
    /// The Observation's logical id.
    pub id: &'a str,
    /// `Patient/<id>`.
    pub patient: &'a str,
    /// `Device/<id>`.
    pub device: &'a str,
    pub loinc: &'a str,
    pub display: &'a str,
    /// The value as exact decimal text in the unit (`37.12`).
    pub value: &'a str,
    /// The UCUM unit code (`Cel`, `%`, `/min`).
    pub unit: &'a str,
    pub time_ms: u64,
}

/// The Observation for `reading`.
pub fn device_observation(reading: &DeviceReading<'_>) -> Value {
    // FHIR's decimal is a JSON number: the value's text is one, exactly as the device's integer
    // and its fixed decimals give it.
    let value: Value = serde_json::from_str(reading.value).unwrap_or(Value::Null);
    json!({
        "resourceType": "Observation",
        "id": reading.id,
        "meta": { "profile": [PHD_NUMERIC_PROFILE] },
        "status": "final",
        "category": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs",
                "display": "Vital Signs",
            }],
        }],
        "code": {
            "coding": [{
                "system": "http://loinc.org",
                "code": reading.loinc,
                "display": reading.display,
            }],
        },
        "subject": { "reference": reading.patient },
        "effectiveDateTime": instant(reading.time_ms),
        "valueQuantity": {
            "value": value,
            "unit": reading.unit,
            "system": "http://unitsofmeasure.org",
            "code": reading.unit,
        },
        "device": { "reference": reading.device },
    })
}

/// A paired device, as its organisation's node knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairedDevice<'a> {
    /// The device's public key, hex: its logical id.
    pub key: &'a str,
    /// The organisation that enrolled it.
    pub owner: &'a str,
    /// `Patient/<id>` while it is paired; `None` once unpaired.
    pub patient: Option<&'a str>,
}

/// The identifier system of a device's key.
pub const DEVICE_KEY_SYSTEM: &str = "urn:medledger:device-key";

/// A paired device as a FHIR R4 Device: its key as id and identifier, its owner, and its patient
/// while paired (`status` active), or none once unpaired (`inactive`).
pub fn paired_device(device: &PairedDevice<'_>) -> Value {
    let mut resource = json!({
        "resourceType": "Device",
        "id": device.key,
        "identifier": [{ "system": DEVICE_KEY_SYSTEM, "value": device.key }],
        "status": if device.patient.is_some() { "active" } else { "inactive" },
        "type": { "text": "Personal health device" },
        "owner": {
            "identifier": { "system": "urn:medledger:organisation", "value": device.owner },
            "display": device.owner,
        },
    });
    if let Some(patient) = device.patient {
        resource["patient"] = json!({ "reference": patient });
    }
    resource
}

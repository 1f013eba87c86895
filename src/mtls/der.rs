//! Just enough DER to read a certificate's extensions: the openssl crate exposes key usage
//! but not basic constraints, which Kuma's provided-CA check needs (X509-SVID §4.1).
//! Every read is bounds-checked; malformed input is `None`, never a panic.

/// One extension: its OID (content bytes), criticality, and value (the OCTET STRING's
/// content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension<'a> {
    pub oid: &'a [u8],
    pub critical: bool,
    pub value: &'a [u8],
}

/// `2.5.29.19` basicConstraints.
pub const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
/// `2.5.29.15` keyUsage.
pub const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
/// `2.5.29.17` subjectAltName.
pub const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// A TLV at the start of `input`: (tag, content, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const EXTENSIONS: u8 = 0xa3;

/// The extensions of a DER certificate.
pub fn extensions(cert_der: &[u8]) -> Option<Vec<Extension<'_>>> {
    let (tag, cert, _) = tlv(cert_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    // Skip to the [3] EXPLICIT extensions field, the last of the TBSCertificate.
    let mut found = None;
    while !tbs.is_empty() {
        let (tag, content, rest) = tlv(tbs)?;
        if tag == EXTENSIONS {
            found = Some(content);
        }
        tbs = rest;
    }
    let Some(wrapped) = found else { return Some(Vec::new()) };
    let (tag, mut list, _) = tlv(wrapped)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut out = Vec::new();
    while !list.is_empty() {
        let (tag, ext, rest) = tlv(list)?;
        list = rest;
        if tag != SEQUENCE {
            return None;
        }
        let (tag, oid, mut ext) = tlv(ext)?;
        if tag != OID {
            return None;
        }
        let mut critical = false;
        let (mut tag, mut content, mut after) = tlv(ext)?;
        if tag == BOOLEAN {
            critical = content.first().is_some_and(|b| *b != 0);
            ext = after;
            (tag, content, after) = tlv(ext)?;
        }
        let _ = after;
        if tag != OCTET_STRING {
            return None;
        }
        out.push(Extension { oid, critical, value: content });
    }
    Some(out)
}

/// Whether basicConstraints says `cA: TRUE` (absent or malformed: not a CA).
pub fn is_ca(cert_der: &[u8]) -> bool {
    let Some(exts) = extensions(cert_der) else { return false };
    let Some(bc) = exts.iter().find(|e| e.oid == OID_BASIC_CONSTRAINTS) else { return false };
    let Some((SEQUENCE, content, _)) = tlv(bc.value) else { return false };
    matches!(tlv(content), Some((BOOLEAN, v, _)) if v.first().is_some_and(|b| *b != 0))
}

/// basicConstraints' `pathLenConstraint` of a CA: `Some(None)` when it has none (any depth
/// below it), `Some(Some(n))` when it limits the intermediates below it to `n`, `None` when
/// the certificate is no CA or the extension is malformed.
pub fn ca_path_len(cert_der: &[u8]) -> Option<Option<u64>> {
    if !is_ca(cert_der) {
        return None;
    }
    let exts = extensions(cert_der)?;
    let bc = exts.iter().find(|e| e.oid == OID_BASIC_CONSTRAINTS)?;
    let (SEQUENCE, content, _) = tlv(bc.value)? else { return None };
    let (_, _, rest) = tlv(content)?;
    if rest.is_empty() {
        return Some(None);
    }
    let (INTEGER, n, _) = tlv(rest)? else { return None };
    if n.is_empty() || n.len() > 8 || n[0] & 0x80 != 0 {
        return None;
    }
    Some(Some(n.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_input_is_none_not_a_panic() {
        for bad in [&[][..], &[0x30], &[0x30, 0x85, 1, 2, 3, 4, 5], &[0x30, 0x05, 0x30, 0x01], &[0x30, 0x82, 0xff]] {
            assert!(extensions(bad).is_none() || extensions(bad) == Some(Vec::new()));
            assert!(!is_ca(bad));
            assert_eq!(ca_path_len(bad), None);
        }
    }
}

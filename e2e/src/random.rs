//! Random names and ids, so that tests sharing one real cluster never collide.

use uuid::Uuid;

/// A random GUID (version 4), for client ids no other test uses.
pub fn random_guid() -> String {
    Uuid::new_v4().to_string()
}

/// A random lowercase hex string of `len` characters.
pub fn random_hex(len: usize) -> String {
    let mut out = String::with_capacity(len + 32);
    while out.len() < len {
        let hex = Uuid::new_v4().simple().to_string();
        // Skip the version and variant digits: every other digit of a v4 UUID is random.
        out.extend(
            hex.chars()
                .enumerate()
                .filter(|(i, _)| *i != 12 && *i != 16)
                .map(|(_, c)| c),
        );
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_version_4() {
        let guid = random_guid();
        let parsed = Uuid::parse_str(&guid).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(guid, guid.to_lowercase());
        assert_ne!(random_guid(), guid);
    }

    #[test]
    fn hex_has_the_asked_length() {
        for len in [0, 6, 24, 43, 100] {
            let h = random_hex(len);
            assert_eq!(h.len(), len);
            assert!(h.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')), "{h}");
        }
        assert_ne!(random_hex(24), random_hex(24));
    }
}

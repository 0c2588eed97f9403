//! A QR code of the verification URL, drawn with Unicode half blocks for a phone to scan.

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// Renders `text` as a QR code two modules per character cell, or `None` when it does not fit one.
pub fn render_qr(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_square_block_of_half_blocks() {
        let drawn = render_qr("https://chat.qwen.ai/authorize?user_code=ABCD-1234").unwrap();
        let lines: Vec<&str> = drawn.lines().collect();
        let width = lines[0].chars().count();
        assert!(
            width >= 25,
            "a QR code is at least 21 modules plus a quiet zone"
        );
        assert!(lines.iter().all(|line| line.chars().count() == width));
        assert_eq!(lines.len(), width.div_ceil(2));
    }
}

package browsertest

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

// quietZone is the white margin DecodeQR adds around the image: the QR
// specification wants four modules of white around the symbol, and an
// ElementScreenshot of a tightly cropped code has none.
const quietZone = 32

// DecodeQR reads the QR code in a PNG, such as a Screenshot, and returns its
// text. The code can be anywhere in the image, at any size the screen shows
// it; an image with no readable code is an error.
func DecodeQR(pngData []byte) (string, error) {
	img, err := png.Decode(bytes.NewReader(pngData))
	if err != nil {
		return "", fmt.Errorf("decode PNG: %w", err)
	}
	r := img.Bounds()
	padded := image.NewRGBA(image.Rect(0, 0, r.Dx()+2*quietZone, r.Dy()+2*quietZone))
	draw.Draw(padded, padded.Bounds(), &image.Uniform{C: color.White}, image.Point{}, draw.Src)
	draw.Draw(padded, r.Sub(r.Min).Add(image.Pt(quietZone, quietZone)), img, r.Min, draw.Over)

	bmp, err := gozxing.NewBinaryBitmapFromImage(padded)
	if err != nil {
		return "", fmt.Errorf("binarize image: %w", err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{
		gozxing.DecodeHintType_TRY_HARDER: true,
	})
	if err != nil {
		// zxing's finder-pattern search misreads about one small code in
		// 200 (data modules that look like a finder pattern). A code alone
		// on white, as an element screenshot or the picture itself is, is
		// then read as a pure barcode: its black pixels' bounding box.
		if pure, perr := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{
			gozxing.DecodeHintType_PURE_BARCODE: true,
		}); perr == nil {
			return pure.GetText(), nil
		}
		return "", fmt.Errorf("no readable QR code in the %dx%d image: %w", r.Dx(), r.Dy(), err)
	}
	return res.GetText(), nil
}

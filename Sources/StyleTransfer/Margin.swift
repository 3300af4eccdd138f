// A margin of the image mirrored around it, for the network to see beyond the image's edges: the image, (channels,
// height, width), becomes (channels, height + 2m, width + 2m), where the pixel m rows above the first is row m of the
// image (mirrored about the edge row, which is not repeated), and so on along every edge and into the corners. The
// network then pads with zeros only m pixels out, where its deep layers' zeros no longer read as an edge of the
// picture. The margin's gradient goes back to the pixels it mirrors (`foldMargin`, the adjoint of `mirrorMargin`).

/// Row or column `index` of the mirrored map, −m ..< count + m, as an index into the image's `count`: −1 reads 1,
/// `count` reads `count − 2`. Needs m < count.
@inline(__always)
func mirroredIndex(_ index: Int, count: Int) -> Int {
    index < 0 ? -index : (index >= count ? 2 * (count - 1) - index : index)
}

/// The image with a mirrored margin of `margin` pixels, (channels, height + 2 margin, width + 2 margin).
func mirrorMargin(_ image: UnsafeBufferPointer<Float>, channels: Int, height: Int, width: Int, margin: Int,
                  into padded: UnsafeMutableBufferPointer<Float>) {
    precondition(margin >= 0 && margin < height && margin < width, "a mirrored margin must be smaller than the image")
    let (outerHeight, outerWidth) = (height + 2 * margin, width + 2 * margin)
    precondition(image.count == channels * height * width && padded.count == channels * outerHeight * outerWidth)
    for c in 0 ..< channels {
        for y in 0 ..< outerHeight {
            let source = (c * height + mirroredIndex(y - margin, count: height)) * width
            let target = (c * outerHeight + y) * outerWidth
            for x in 0 ..< outerWidth { padded[target + x] = image[source + mirroredIndex(x - margin, count: width)] }
        }
    }
}

/// The adjoint of `mirrorMargin`: each pixel of the image receives the values of every position of the padded map
/// that mirrors it (itself, and its mirror images in the margin). `image` is overwritten.
func foldMargin(_ padded: UnsafeBufferPointer<Float>, channels: Int, height: Int, width: Int, margin: Int,
                into image: UnsafeMutableBufferPointer<Float>) {
    let (outerHeight, outerWidth) = (height + 2 * margin, width + 2 * margin)
    precondition(image.count == channels * height * width && padded.count == channels * outerHeight * outerWidth)
    for i in image.indices { image[i] = 0 }
    for c in 0 ..< channels {
        for y in 0 ..< outerHeight {
            let target = (c * height + mirroredIndex(y - margin, count: height)) * width
            let source = (c * outerHeight + y) * outerWidth
            for x in 0 ..< outerWidth { image[target + mirroredIndex(x - margin, count: width)] += padded[source + x] }
        }
    }
}

/// `mirrorMargin` of an array.
func mirrorMargin(_ image: [Float], channels: Int, height: Int, width: Int, margin: Int) -> [Float] {
    guard margin > 0 else { return image }
    var padded = [Float](repeating: 0, count: channels * (height + 2 * margin) * (width + 2 * margin))
    image.withUnsafeBufferPointer { image in
        padded.withUnsafeMutableBufferPointer {
            mirrorMargin(image, channels: channels, height: height, width: width, margin: margin, into: $0)
        }
    }
    return padded
}

/// A float32 array in CHW order (channel planes of `height` rows of `width` values), allocated once.
///
/// A tensor owns a fixed capacity, allocated zeroed and 64-byte aligned when it is created; its shape may change
/// later (`reshape`) as long as it fits, so that one allocation serves layers of different shapes in turn. All the
/// network's activations, gradients and scratch live in tensors; nothing is allocated while it evaluates.
public final class Tensor {
    public private(set) var channels: Int
    public private(set) var height: Int
    public private(set) var width: Int
    /// The number of floats allocated; `count` never exceeds it.
    public let capacity: Int
    /// (capacity), of which the first `count` floats are the tensor: (channels, height, width).
    package let storage: UnsafeMutablePointer<Float>

    /// A zero tensor of the given shape; `capacity` defaults to exactly that shape.
    public init(channels: Int, height: Int, width: Int, capacity: Int? = nil) {
        precondition(channels >= 0 && height >= 0 && width >= 0, "negative tensor dimension")
        let count = channels * height * width
        let capacity = capacity ?? count
        precondition(capacity >= count, "tensor capacity smaller than its shape")
        self.channels = channels
        self.height = height
        self.width = width
        self.capacity = capacity
        storage = allocateZeroed(Float.self, capacity: max(1, capacity))
    }

    /// A tensor holding a copy of `values`, which are in CHW order.
    public convenience init(channels: Int, height: Int, width: Int, values: [Float]) {
        precondition(values.count == channels * height * width, "values do not match the tensor shape")
        self.init(channels: channels, height: height, width: width)
        values.withUnsafeBufferPointer { storage.update(from: $0.baseAddress!, count: $0.count) }
    }

    /// A tensor holding a copy of `other`'s values, with its shape and no spare capacity.
    public convenience init(copying other: Tensor) {
        self.init(channels: other.channels, height: other.height, width: other.width)
        storage.update(from: other.storage, count: other.count)
    }

    deinit {
        storage.deinitialize(count: max(1, capacity))
        storage.deallocate()
    }

    /// channels × height × width.
    public var count: Int { channels &* height &* width }

    /// height × width: the length of one channel plane.
    public var planeSize: Int { height &* width }

    /// The bytes this tensor allocated.
    public var allocatedBytes: Int { capacity * MemoryLayout<Float>.stride }

    /// Gives the tensor a new shape within its capacity. The values are not moved or cleared.
    package func reshape(channels: Int, height: Int, width: Int) {
        precondition(channels >= 0 && height >= 0 && width >= 0, "negative tensor dimension")
        precondition(channels * height * width <= capacity, "shape exceeds the tensor's capacity")
        self.channels = channels
        self.height = height
        self.width = width
    }

    /// The tensor's values, (channels, height, width); valid while the tensor lives and keeps its shape.
    public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: storage, count: count)
    }

    /// A copy of the values in CHW order.
    public var values: [Float] {
        Array(UnsafeBufferPointer(start: storage, count: count))
    }

    /// Copies `values` (CHW order, exactly `count` of them) into the tensor.
    public func assign(_ values: [Float]) {
        precondition(values.count == count, "values do not match the tensor shape")
        values.withUnsafeBufferPointer { storage.update(from: $0.baseAddress!, count: $0.count) }
    }

    /// Sets every value to zero.
    public func zero() {
        storage.update(repeating: 0, count: count)
    }

    public subscript(channel: Int, y: Int, x: Int) -> Float {
        get {
            precondition(channel >= 0 && channel < channels && y >= 0 && y < height && x >= 0 && x < width)
            return storage[(channel * height + y) * width + x]
        }
        set {
            precondition(channel >= 0 && channel < channels && y >= 0 && y < height && x >= 0 && x < width)
            storage[(channel * height + y) * width + x] = newValue
        }
    }
}

/// A byte array allocated once: ReLU masks (one bit per element) and max-pooling choices (one byte per output).
package final class ByteBuffer {
    package let capacity: Int
    /// (capacity); the layout is the user's (see `ReLUMask` and the pooling kernels).
    package let storage: UnsafeMutablePointer<UInt8>

    package init(capacity: Int) {
        self.capacity = capacity
        storage = allocateZeroed(UInt8.self, capacity: max(1, capacity))
    }

    deinit {
        storage.deallocate()
    }
}

/// Buffers at least this large are zeroed by all cores.
private let largeBufferBytes = 4 << 20

/// `capacity` zeroed values, 64-byte aligned; freed with `deallocate()`. The zeros of a large buffer are written by
/// all cores, since that first touch is what maps its pages (the kernel clears each page as it maps it).
private func allocateZeroed<T>(_ type: T.Type, capacity: Int) -> UnsafeMutablePointer<T> {
    let bytes = capacity * MemoryLayout<T>.stride
    let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
    guard bytes >= largeBufferBytes else {
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        return raw.bindMemory(to: T.self, capacity: capacity)
    }
    let start = UncheckedSendable(value: raw), block = 1 << 20
    parallelFor((bytes + block - 1) / block, cost: block / 8, threads: coreCount) { range in
        let from = range.lowerBound * block, to = min(bytes, range.upperBound * block)
        (start.value + from).initializeMemory(as: UInt8.self, repeating: 0, count: to - from)
    }
    return raw.bindMemory(to: T.self, capacity: capacity)
}

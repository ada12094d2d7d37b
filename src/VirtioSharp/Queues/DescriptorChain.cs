using VirtioSharp.Spec;

namespace VirtioSharp.Queues;

/// <summary>
/// A descriptor chain the device side popped: the descriptors were read once, validated and copied here, so nothing the
/// driver changes in shared memory afterwards affects it. Pooled per queue; returned by AddUsed.
/// </summary>
public sealed class DescriptorChain
{
    private ChainSegment[] _segments;

    internal DescriptorChain(int capacity) => _segments = new ChainSegment[Math.Max(4, capacity)];

    /// <summary>The head descriptor index (split) or buffer id (packed) reported back in the used element.</summary>
    public ushort Head { get; internal set; }
    /// <summary>Descriptors this chain occupied in the ring (packed rings need it to advance).</summary>
    public ushort RingDescriptors { get; internal set; }
    /// <summary>Segments in the chain (indirect tables flattened).</summary>
    public int Count { get; private set; }
    /// <summary>Number of driver-readable segments; they come before the writable ones.</summary>
    public int ReadableCount { get; private set; }
    /// <summary>Total bytes of the readable segments.</summary>
    public ulong ReadableBytes { get; private set; }
    /// <summary>Total bytes of the device-writable segments.</summary>
    public ulong WritableBytes { get; private set; }
    /// <summary>Packed: the indirect table the chain came from (length 0: the chain used direct descriptors).</summary>
    public ulong IndirectTable { get; internal set; }
    /// <summary>Packed: descriptors in that indirect table.</summary>
    public uint IndirectTableLength { get; internal set; }
    /// <summary>Packed: the inflight log entry recording this chain (vhost-user inflight tracking).</summary>
    internal ushort LogEntry { get; set; }
    internal bool InFlight { get; set; }
    /// <summary>Pop sequence number: IN_ORDER devices must use chains in this order.</summary>
    internal uint Seq { get; set; }
    /// <summary>Where QueueService keeps the chain while it is pending under IN_ORDER.</summary>
    internal int ServiceIndex { get; set; }

    /// <summary>All segments, readable ones first.</summary>
    public ReadOnlySpan<ChainSegment> Segments => _segments.AsSpan(0, Count);
    /// <summary>The driver-readable segments.</summary>
    public ReadOnlySpan<ChainSegment> Readable => _segments.AsSpan(0, ReadableCount);
    /// <summary>The device-writable segments.</summary>
    public ReadOnlySpan<ChainSegment> Writable => _segments.AsSpan(ReadableCount, Count - ReadableCount);

    internal void Reset()
    {
        Count = 0; ReadableCount = 0; ReadableBytes = 0; WritableBytes = 0; RingDescriptors = 0;
        IndirectTable = 0; IndirectTableLength = 0;
    }

    /// <summary>
    /// Packed: ring descriptor <paramref name="i"/> of <see cref="RingDescriptors"/> as validated at pop (AVAIL/USED bits
    /// dropped): what an inflight log records so the chain can be rebuilt after the ring slot was overwritten.
    /// </summary>
    public PackedDesc RingDescriptor(int i)
    {
        if ((uint)i >= RingDescriptors) throw new ArgumentOutOfRangeException(nameof(i), $"{this} occupies {RingDescriptors} ring descriptors");
        if (IndirectTableLength != 0) return new PackedDesc(IndirectTable, IndirectTableLength, Head, (ushort)DescFlags.Indirect);
        var s = _segments[i];
        bool last = i == RingDescriptors - 1;
        var flags = (s.Writable ? DescFlags.Write : 0) | (last ? 0 : DescFlags.Next);
        // §2.8.6: only the last descriptor of a chain carries the buffer id.
        return new PackedDesc(s.Addr, s.Length, last ? Head : (ushort)0, (ushort)flags);
    }

    internal void Add(ulong addr, uint len, bool writable)
    {
        if (Count == _segments.Length) Array.Resize(ref _segments, _segments.Length * 2);
        _segments[Count++] = new ChainSegment(addr, len, writable);
        if (writable) WritableBytes += len;
        else { ReadableCount++; ReadableBytes += len; }
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"chain head={Head} segs={Count} readable={ReadableBytes}B writable={WritableBytes}B";
}

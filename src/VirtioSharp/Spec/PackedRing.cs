namespace VirtioSharp.Spec;

/// <summary>Packed-ring constants (virtio 1.2 §2.8).</summary>
public static class PackedRing
{
    /// <summary>Largest packed ring size (§2.8.10.1).</summary>
    public const int MaxQueueSize = 32768;
    /// <summary>Descriptor ring alignment; both event suppression areas are 4-byte aligned (§2.8.10.1).</summary>
    public const int DescAlign = 16;
    /// <summary>Alignment of the driver and device event suppression areas (§2.8.10.1).</summary>
    public const int EventAlign = 4;
    /// <summary>Bytes of an event suppression structure: le16 desc_event_off_wrap, le16 desc_event_flags (§2.8.14).</summary>
    public const int EventBytes = 4;

    /// <summary>VIRTQ_DESC_F_AVAIL (bit 7) and VIRTQ_DESC_F_USED (bit 15) (§2.8.1).</summary>
    public const ushort Avail = 1 << 7;
    /// <summary>VIRTQ_DESC_F_USED (bit 15).</summary>
    public const ushort Used = 1 << 15;

    /// <summary>desc_event_flags values (§2.8.14): RING_EVENT_FLAGS_ENABLE / DISABLE / DESC (DESC needs EVENT_IDX).</summary>
    public const ushort EventEnable = 0;
    /// <summary>RING_EVENT_FLAGS_DISABLE: do not notify.</summary>
    public const ushort EventDisable = 1;
    /// <summary>RING_EVENT_FLAGS_DESC: notify when the descriptor at off_wrap is used/made available (needs EVENT_IDX).</summary>
    public const ushort EventDesc = 2;

    /// <summary>Packed rings are little-endian (modern devices only, §2.4): a no-op on little-endian hosts, decided by the JIT.</summary>
    public static ushort Le(ushort v) => BitConverter.IsLittleEndian ? v : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v);
    /// <inheritdoc cref="Le(ushort)"/>
    public static uint Le(uint v) => BitConverter.IsLittleEndian ? v : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v);
    /// <inheritdoc cref="Le(ushort)"/>
    public static ulong Le(ulong v) => BitConverter.IsLittleEndian ? v : System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v);

    /// <summary>Packed rings need not be a power of two (§2.8.10.1).</summary>
    public static bool IsValidSize(int size) => size is > 0 and <= MaxQueueSize;

    /// <summary>Bytes of a descriptor ring of <paramref name="size"/> entries.</summary>
    public static ulong DescBytes(int size) => (ulong)size * PackedDesc.Size;

    /// <summary>Flags a driver writes to make a descriptor available under wrap counter <paramref name="wrap"/> (§2.8.1).</summary>
    public static ushort AvailBits(bool wrap) => wrap ? Avail : Used;

    /// <summary>Flags a device writes to mark a descriptor used under wrap counter <paramref name="wrap"/>.</summary>
    public static ushort UsedBits(bool wrap) => wrap ? (ushort)(Avail | Used) : (ushort)0;

    /// <summary>Available for a device expecting <paramref name="wrap"/>: AVAIL = wrap and USED = !wrap (§2.8.1).</summary>
    public static bool IsAvail(ushort flags, bool wrap) => ((flags & Avail) != 0) == wrap && ((flags & Used) != 0) != wrap;

    /// <summary>Used for a driver expecting <paramref name="wrap"/>: AVAIL = USED = wrap (§2.8.1).</summary>
    public static bool IsUsed(ushort flags, bool wrap) => ((flags & Avail) != 0) == wrap && ((flags & Used) != 0) == wrap;

    /// <summary>The event-suppression off_wrap word: ring offset in bits 0-14, wrap counter in bit 15 (§2.8.14).</summary>
    public static ushort OffWrap(int offset, bool wrap) => (ushort)(offset | (wrap ? 0x8000 : 0));

    /// <summary>
    /// The EVENT_IDX test over packed positions (§2.8.14, as Linux and QEMU do it): positions are unwrapped relative to the
    /// current lap, so an event offset from the previous lap counts as negative. <paramref name="oldPos"/> may be negative
    /// (it was in the previous lap).
    /// </summary>
    public static bool NeedEvent(ushort offWrap, bool currentWrap, int size, int newPos, int oldPos)
    {
        int ev = offWrap & 0x7FFF;
        if ((offWrap >> 15 != 0) != currentWrap) ev -= size;
        return EventIdx.NeedEvent((ushort)ev, (ushort)newPos, (ushort)oldPos);
    }

    /// <summary>
    /// The NOTIFICATION_DATA value after the 16-bit vq index (§2.9 / §4.1.5.2): next_off (15 bits) and next_wrap. Split:
    /// the avail idx itself; packed: the offset of the next descriptor the driver will make available and its wrap counter.
    /// </summary>
    public static uint NotificationData(int vq, ushort offWrap) => (uint)(ushort)vq | (uint)offWrap << 16;
}

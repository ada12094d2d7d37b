namespace VirtioSharp.Spec;

/// <summary>
/// Where the three parts of a split virtqueue sit and how big they are (§2.7).
/// Modern: three independent areas with alignments 16 / 2 / 4. Legacy (§2.7.2 legacy interface): one contiguous
/// block, the used ring starting at the next <c>align</c> boundary (4096 for PCI and mmio v1 by default).
/// The same three addresses describe a packed ring (§2.8.10): Desc = descriptor ring, Avail = driver event suppression
/// area (<see cref="DriverArea"/>), Used = device event suppression area (<see cref="DeviceArea"/>); transports program
/// them into the same desc/driver/device registers either way.
/// </summary>
public readonly record struct SplitRingLayout(ushort QueueSize, ulong Desc, ulong Avail, ulong Used, bool EventIdx, RingEndian Endian)
{
    /// <summary>Descriptor table alignment (§2.7).</summary>
    public const int DescAlign = 16;
    /// <summary>Available ring alignment (§2.7).</summary>
    public const int AvailAlign = 2;
    /// <summary>Used ring alignment (§2.7).</summary>
    public const int UsedAlign = 4;
    /// <summary>Legacy default alignment of the used ring within the contiguous block (§2.7.2).</summary>
    public const int LegacyAlign = 4096;
    /// <summary>Largest split ring size (§2.7).</summary>
    public const int MaxQueueSize = 32768;

    /// <summary>Bytes of the descriptor table.</summary>
    public static ulong DescBytes(int size) => (ulong)size * VirtqDesc.Size;

    /// <summary>Bytes of the avail ring: flags, idx, ring[size], used_event (always counted, as the spec sizes it).</summary>
    public static ulong AvailBytes(int size) => 6 + 2UL * (ulong)size;

    /// <summary>Bytes of the used ring: flags, idx, ring[size], avail_event.</summary>
    public static ulong UsedBytes(int size) => 6 + 8UL * (ulong)size;

    /// <summary>Total contiguous bytes of a legacy ring with the given alignment.</summary>
    public static ulong LegacyBytes(int size, ulong align = LegacyAlign) =>
        AlignUp(DescBytes(size) + AvailBytes(size), align) + AlignUp(UsedBytes(size), align);

    /// <summary>The legacy layout at <paramref name="baseAddr"/> (QueuePFN × page size).</summary>
    public static SplitRingLayout Legacy(ushort size, ulong baseAddr, bool eventIdx, RingEndian endian, ulong align = LegacyAlign)
    {
        ulong avail = baseAddr + DescBytes(size);
        ulong used = AlignUp(avail + AvailBytes(size), align);
        return new SplitRingLayout(size, baseAddr, avail, used, eventIdx, endian);
    }

    /// <summary>Whether <paramref name="size"/> is a valid split ring size: a power of two up to 32768 (§2.7).</summary>
    public static bool IsValidSize(int size) => size > 0 && size <= MaxQueueSize && (size & (size - 1)) == 0;

    /// <summary>Valid size for the layout in use: split needs a power of two (§2.7), packed any 1..32768 (§2.8.10.1).</summary>
    public static bool IsValidSize(int size, bool packed) => packed ? PackedRing.IsValidSize(size) : IsValidSize(size);

    /// <summary>The Driver Area: the avail ring (split) or the driver event suppression structure (packed).</summary>
    public ulong DriverArea => Avail;
    /// <summary>The Device Area: the used ring (split) or the device event suppression structure (packed).</summary>
    public ulong DeviceArea => Used;

    /// <summary>Address of avail.flags (§2.7.6).</summary>
    public ulong AvailFlagsAddr => Avail;
    /// <summary>Address of avail.idx (§2.7.6).</summary>
    public ulong AvailIdxAddr => Avail + 2;
    /// <summary>Address of avail.ring[<paramref name="slot"/>] (§2.7.6).</summary>
    public ulong AvailRingAddr(int slot) => Avail + 4 + 2UL * (ulong)slot;
    /// <summary>Address of used_event, after the avail ring; meaningful with EVENT_IDX (§2.7.7).</summary>
    public ulong UsedEventAddr => Avail + 4 + 2UL * QueueSize;
    /// <summary>Address of used.flags (§2.7.8).</summary>
    public ulong UsedFlagsAddr => Used;
    /// <summary>Address of used.idx (§2.7.8).</summary>
    public ulong UsedIdxAddr => Used + 2;
    /// <summary>Address of used.ring[<paramref name="slot"/>] (§2.7.8).</summary>
    public ulong UsedRingAddr(int slot) => Used + 4 + 8UL * (ulong)slot;
    /// <summary>Address of avail_event, after the used ring; meaningful with EVENT_IDX (§2.7.7).</summary>
    public ulong AvailEventAddr => Used + 4 + 8UL * QueueSize;
    /// <summary>Address of descriptor <paramref name="index"/> in the table (§2.7.5).</summary>
    public ulong DescAddr(int index) => Desc + (ulong)index * VirtqDesc.Size;

    /// <summary>Rounds <paramref name="v"/> up to a multiple of <paramref name="align"/> (a power of two).</summary>
    public static ulong AlignUp(ulong v, ulong align) => (v + align - 1) & ~(align - 1);
}

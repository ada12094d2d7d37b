namespace VirtioSharp.Memory;

/// <summary>
/// How a device's access reaches guest-physical memory once translated: straight to RAM, or through a simulated bus
/// that enforces protected (private) pages and snoops a CPU cache for coherent devices.
/// </summary>
public interface IPhysicalPort
{
    /// <summary>Reads guest-physical memory at <paramref name="gpa"/> into <paramref name="dst"/>.</summary>
    MemStatus Read(ulong gpa, Span<byte> dst);
    /// <summary>Writes <paramref name="src"/> to guest-physical memory at <paramref name="gpa"/>.</summary>
    MemStatus Write(ulong gpa, ReadOnlySpan<byte> src);
    /// <summary>Acquire-load of an aligned 16-bit ring index at <paramref name="gpa"/>.</summary>
    MemStatus LoadU16Acquire(ulong gpa, out ushort value);
    /// <summary>Release-store of an aligned 16-bit ring index at <paramref name="gpa"/>.</summary>
    MemStatus StoreU16Release(ulong gpa, ushort value);
    /// <summary>
    /// A ring barrier the device's queue asked for (<paramref name="op"/> at <paramref name="strength"/>): plain RAM
    /// fences (an SMP write or read barrier is already the release store or acquire load that follows or precedes
    /// it); a simulated bus may model a store buffer that only a strong enough barrier drains.
    /// </summary>
    void Barrier(BarrierOp op, Dma.BarrierKind strength);
    /// <summary>Checks that [gpa, gpa+len) may be accessed as <paramref name="access"/> without touching it.</summary>
    MemStatus Check(ulong gpa, ulong len, Access access);
    /// <summary>
    /// Host address of guest-physical <paramref name="gpa"/> and how many bytes of [gpa, gpa+len) follow it contiguously,
    /// for an I/O the host performs later; <see cref="MemStatus.NoDirectAccess"/> if this port only copies.
    /// </summary>
    MemStatus MapHost(ulong gpa, ulong len, Access access, out nint host, out ulong contiguous);
    /// <summary>True while writes through this port are recorded in a dirty-page log (live migration).</summary>
    bool LogsWrites { get; }
    /// <summary>
    /// Records in the dirty-page log that guest-physical [gpa, gpa+len) was written without <see cref="Write"/> (the
    /// host wrote through an address from <see cref="MapHost"/>); nothing when <see cref="LogsWrites"/> is false.
    /// </summary>
    void MarkWritten(ulong gpa, ulong len);
}

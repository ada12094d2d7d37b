namespace VirtioSharp.Memory;

/// <summary>
/// A device's view of memory: every access is translated and permission-checked, and fails with a
/// <see cref="MemStatus"/> instead of touching memory it may not. Implemented by structs so queue code, which is generic
/// over it, gets the calls inlined instead of dispatched.
/// </summary>
public interface IDeviceMemory
{
    /// <summary>Reads device address <paramref name="addr"/> into <paramref name="dst"/>, translated and checked for <see cref="Access.Read"/>.</summary>
    MemStatus Read(ulong addr, Span<byte> dst);
    /// <summary>Writes <paramref name="src"/> to device address <paramref name="addr"/>, translated and checked for <see cref="Access.Write"/>.</summary>
    MemStatus Write(ulong addr, ReadOnlySpan<byte> src);
    /// <summary>Acquire-load of an aligned 16-bit ring index (pairs with the driver's release-store).</summary>
    MemStatus LoadU16Acquire(ulong addr, out ushort value);
    /// <summary>
    /// Acquire-loads the aligned 16-bit field at <paramref name="acquireOffset"/> of the record at <paramref name="addr"/>,
    /// then reads the whole record into <paramref name="dst"/>, translating once: a packed descriptor's flags, then the
    /// fields they publish (virtio 1.2 §2.8.21).
    /// </summary>
    MemStatus LoadU16AcquireThenRead(ulong addr, int acquireOffset, out ushort value, Span<byte> dst);
    /// <summary>Release-store of an aligned 16-bit ring index.</summary>
    MemStatus StoreU16Release(ulong addr, ushort value);
    /// <summary>
    /// A ring barrier: <paramref name="op"/> at <paramref name="strength"/> (SMP, or platform with ORDER_PLATFORM), passed
    /// to the port, which fences or, on a simulated platform, drains its modelled store buffer.
    /// </summary>
    void Barrier(BarrierOp op, Dma.BarrierKind strength);
    /// <summary>Checks that all of [addr, addr+len) may be accessed as <paramref name="access"/> without touching it.</summary>
    MemStatus Check(ulong addr, ulong len, Access access);
    /// <summary>
    /// Zero copy: translates and checks the first piece of [addr, addr+len) for <paramref name="access"/> and returns its
    /// host address and length (callers loop for the rest), so storage can move data straight to or from guest memory.
    /// <see cref="MemStatus.NoDirectAccess"/> when the space only copies (then use <see cref="Read"/>/<see cref="Write"/>).
    /// The address stays valid while the memory behind it stays mapped: a device finishes such I/O before its queue stops.
    /// </summary>
    MemStatus MapForIo(ulong addr, ulong len, Access access, out nint host, out ulong contiguous);
    /// <summary>True while writes through this space are recorded in a dirty-page log (vhost-user live migration).</summary>
    bool LogsWrites { get; }
    /// <summary>
    /// Records in the dirty-page log that [addr, addr+len) was written without <see cref="Write"/> — by storage, through
    /// addresses from <see cref="MapForIo"/> — translated as a write would be, so the log names guest-physical pages.
    /// Queues call it for a chain's writable buffers before they publish it used; nothing when <see cref="LogsWrites"/>
    /// is false. A piece that no longer translates is skipped and reported in the result.
    /// </summary>
    MemStatus MarkWritten(ulong addr, ulong len);
}

namespace VirtioSharp.Memory;

/// <summary>A physical port implemented by an object (the simulated platform's bus).</summary>
public readonly struct PortRef(IPhysicalPort port) : IPhysicalPort
{
    /// <summary>The port every access is forwarded to.</summary>
    public IPhysicalPort Port { get; } = port;
    /// <inheritdoc/>
    public MemStatus Read(ulong gpa, Span<byte> dst) => Port.Read(gpa, dst);
    /// <inheritdoc/>
    public MemStatus Write(ulong gpa, ReadOnlySpan<byte> src) => Port.Write(gpa, src);
    /// <inheritdoc/>
    public MemStatus LoadU16Acquire(ulong gpa, out ushort value) => Port.LoadU16Acquire(gpa, out value);
    /// <inheritdoc/>
    public MemStatus StoreU16Release(ulong gpa, ushort value) => Port.StoreU16Release(gpa, value);
    /// <inheritdoc/>
    public void Barrier(BarrierOp op, Dma.BarrierKind strength) => Port.Barrier(op, strength);
    /// <inheritdoc/>
    public MemStatus Check(ulong gpa, ulong len, Access access) => Port.Check(gpa, len, access);
    /// <inheritdoc/>
    public MemStatus MapHost(ulong gpa, ulong len, Access access, out nint host, out ulong contiguous) => Port.MapHost(gpa, len, access, out host, out contiguous);
    /// <inheritdoc/>
    public bool LogsWrites => Port.LogsWrites;
    /// <inheritdoc/>
    public void MarkWritten(ulong gpa, ulong len) => Port.MarkWritten(gpa, len);
}

namespace VirtioSharp.Memory;

/// <summary>Plain RAM: the fast path when nothing sits between device and memory.</summary>
public readonly unsafe struct RamPort(GuestMemory memory) : IPhysicalPort
{
    /// <summary>The RAM accesses go to.</summary>
    public GuestMemory Memory { get; } = memory;
    /// <inheritdoc/>
    public MemStatus Read(ulong gpa, Span<byte> dst) => Memory.Read(gpa, dst);
    /// <inheritdoc/>
    public MemStatus Write(ulong gpa, ReadOnlySpan<byte> src) => Memory.Write(gpa, src);
    /// <inheritdoc/>
    public MemStatus LoadU16Acquire(ulong gpa, out ushort value) => Memory.LoadU16(gpa, out value);
    /// <inheritdoc/>
    public MemStatus StoreU16Release(ulong gpa, ushort value) => Memory.StoreU16(gpa, value);
    /// <inheritdoc/>
    public MemStatus Check(ulong gpa, ulong len, Access access) =>
        gpa + len < gpa ? MemStatus.Overflow : Memory.IsBacked(gpa, len) ? MemStatus.Ok : MemStatus.Unmapped;
    /// <inheritdoc/>
    public MemStatus MapHost(ulong gpa, ulong len, Access access, out nint host, out ulong contiguous)
    {
        if (!Memory.TryGetHost(gpa, out byte* p, out ulong available)) { host = 0; contiguous = 0; return MemStatus.Unmapped; }
        host = (nint)p;
        contiguous = Math.Min(available, len);
        return MemStatus.Ok;
    }
}

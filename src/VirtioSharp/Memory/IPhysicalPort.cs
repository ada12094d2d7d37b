namespace VirtioSharp.Memory;

/// <summary>
/// How a device's access reaches guest-physical memory once translated: straight to RAM, or through a simulated bus
/// that enforces protected (private) pages and snoops a CPU cache for coherent devices.
/// </summary>
public interface IPhysicalPort
{
    MemStatus Read(ulong gpa, Span<byte> dst);
    MemStatus Write(ulong gpa, ReadOnlySpan<byte> src);
    MemStatus LoadU16Acquire(ulong gpa, out ushort value);
    MemStatus StoreU16Release(ulong gpa, ushort value);
    MemStatus Check(ulong gpa, ulong len, Access access);
}

/// <summary>Plain RAM: the fast path when nothing sits between device and memory.</summary>
public readonly struct RamPort(GuestMemory memory) : IPhysicalPort
{
    public GuestMemory Memory { get; } = memory;
    public MemStatus Read(ulong gpa, Span<byte> dst) => Memory.Read(gpa, dst);
    public MemStatus Write(ulong gpa, ReadOnlySpan<byte> src) => Memory.Write(gpa, src);
    public MemStatus LoadU16Acquire(ulong gpa, out ushort value) => Memory.LoadU16(gpa, out value);
    public MemStatus StoreU16Release(ulong gpa, ushort value) => Memory.StoreU16(gpa, value);
    public MemStatus Check(ulong gpa, ulong len, Access access) =>
        gpa + len < gpa ? MemStatus.Overflow : Memory.IsBacked(gpa, len) ? MemStatus.Ok : MemStatus.Unmapped;
}

/// <summary>A physical port implemented by an object (the simulated platform's bus).</summary>
public readonly struct PortRef(IPhysicalPort port) : IPhysicalPort
{
    public IPhysicalPort Port { get; } = port;
    public MemStatus Read(ulong gpa, Span<byte> dst) => Port.Read(gpa, dst);
    public MemStatus Write(ulong gpa, ReadOnlySpan<byte> src) => Port.Write(gpa, src);
    public MemStatus LoadU16Acquire(ulong gpa, out ushort value) => Port.LoadU16Acquire(gpa, out value);
    public MemStatus StoreU16Release(ulong gpa, ushort value) => Port.StoreU16Release(gpa, value);
    public MemStatus Check(ulong gpa, ulong len, Access access) => Port.Check(gpa, len, access);
}

namespace VirtioSharp.Memory;

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

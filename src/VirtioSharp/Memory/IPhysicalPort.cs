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

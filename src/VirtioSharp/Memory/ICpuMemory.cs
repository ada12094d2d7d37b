namespace VirtioSharp.Memory;

/// <summary>
/// The CPU's (driver's) view of guest-physical memory. On plain platforms this is RAM itself (<see cref="GuestMemory"/>);
/// a simulated platform can put a write-back cache in between, which is what makes DMA cache maintenance observable.
/// </summary>
public interface ICpuMemory
{
    /// <summary>Reads guest-physical memory at <paramref name="gpa"/> into <paramref name="dst"/>, as the CPU sees it.</summary>
    MemStatus Read(ulong gpa, Span<byte> dst);
    /// <summary>Writes <paramref name="src"/> to guest-physical memory at <paramref name="gpa"/>, as the CPU sees it.</summary>
    MemStatus Write(ulong gpa, ReadOnlySpan<byte> src);
    /// <summary>CPU copy from one guest range to another (bounce buffering); ranges must not overlap.</summary>
    MemStatus Copy(ulong dstGpa, ulong srcGpa, ulong length);
}

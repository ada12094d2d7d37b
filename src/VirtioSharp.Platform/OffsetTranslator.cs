using VirtioSharp.Memory;

namespace VirtioSharp.Platform;

/// <summary>Bus address = GPA + offset (a dma-ranges window), as the device sees it.</summary>
internal sealed class OffsetTranslator(ulong offset) : IAddressTranslator
{
    public ulong Offset => offset;
    public MemStatus Translate(ulong addr, Access access, out ulong gpa, out ulong contiguous)
    {
        gpa = addr - offset;
        contiguous = ulong.MaxValue - addr;
        if (contiguous == 0) contiguous = 1;
        return addr < offset ? MemStatus.Unmapped : MemStatus.Ok;
    }
}

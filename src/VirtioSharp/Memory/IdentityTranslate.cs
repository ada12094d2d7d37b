namespace VirtioSharp.Memory;

/// <summary>Bus address = guest-physical address.</summary>
public readonly struct IdentityTranslate : ITranslate
{
    /// <inheritdoc/>
    public MemStatus Translate(ulong addr, Access access, out ulong gpa, out ulong contiguous)
    {
        gpa = addr;
        contiguous = ulong.MaxValue - addr + (addr == 0 ? 0UL : 1UL);
        if (contiguous == 0) contiguous = ulong.MaxValue;
        return MemStatus.Ok;
    }
}

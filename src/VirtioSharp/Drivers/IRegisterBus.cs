namespace VirtioSharp.Drivers;

/// <summary>Register window of a device (an mmio region, a PCI BAR or PCI configuration space): 1, 2, 4 or 8 byte accesses.</summary>
public interface IRegisterBus
{
    /// <summary>Reads <paramref name="size"/> bytes at <paramref name="offset"/>, zero-extended.</summary>
    ulong Read(ulong offset, int size);
    /// <summary>Writes the low <paramref name="size"/> bytes of <paramref name="value"/> at <paramref name="offset"/>.</summary>
    void Write(ulong offset, int size, ulong value);
}

namespace VirtioSharp.Drivers;

/// <summary>Register window of a device (an mmio region, a PCI BAR or PCI configuration space): 1, 2, 4 or 8 byte accesses.</summary>
public interface IRegisterBus
{
    ulong Read(ulong offset, int size);
    void Write(ulong offset, int size, ulong value);
}

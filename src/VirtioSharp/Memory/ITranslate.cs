namespace VirtioSharp.Memory;

/// <summary>Struct form of a translation step for <see cref="DeviceMemory{TTranslate, TPort}"/>.</summary>
public interface ITranslate
{
    /// <inheritdoc cref="IAddressTranslator.Translate"/>
    MemStatus Translate(ulong addr, Access access, out ulong gpa, out ulong contiguous);
}

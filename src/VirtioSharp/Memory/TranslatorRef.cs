namespace VirtioSharp.Memory;

/// <summary>Translation through an <see cref="IAddressTranslator"/> object (IOMMU domain, IOTLB).</summary>
public readonly struct TranslatorRef(IAddressTranslator translator) : ITranslate
{
    /// <summary>The translator every access goes through.</summary>
    public IAddressTranslator Translator { get; } = translator;
    /// <inheritdoc/>
    public MemStatus Translate(ulong addr, Access access, out ulong gpa, out ulong contiguous) =>
        Translator.Translate(addr, access, out gpa, out contiguous);
}

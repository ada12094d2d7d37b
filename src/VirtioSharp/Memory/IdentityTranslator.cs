namespace VirtioSharp.Memory;

/// <summary>Identity translation as an object, for code that picks the translation at run time.</summary>
public sealed class IdentityTranslator : IAddressTranslator
{
    /// <summary>The shared instance; the translator has no state.</summary>
    public static readonly IdentityTranslator Instance = new();
    /// <inheritdoc/>
    public MemStatus Translate(ulong addr, Access access, out ulong gpa, out ulong contiguous) =>
        default(IdentityTranslate).Translate(addr, access, out gpa, out contiguous);
}

namespace VirtioSharp.Memory;

/// <summary>Human-readable text for <see cref="MemStatus"/> values, for logs and error details.</summary>
public static class MemStatusExtensions
{
    /// <summary>What <paramref name="s"/> means, in a few words.</summary>
    public static string Describe(this MemStatus s) => s switch
    {
        MemStatus.Ok => "ok",
        MemStatus.Unmapped => "address is outside every guest memory region",
        MemStatus.TranslationFault => "no IOMMU/IOTLB translation for the address",
        MemStatus.PermissionFault => "translation does not permit this access",
        MemStatus.ProtectedPage => "page is private to the protected guest",
        MemStatus.Misaligned => "field is not naturally aligned",
        MemStatus.Overflow => "address range wraps the address space",
        MemStatus.Interrupted => "the translation was still being fetched when the ring stopped",
        _ => s.ToString(),
    };
}

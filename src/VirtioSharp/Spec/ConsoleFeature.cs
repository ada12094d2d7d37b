namespace VirtioSharp.Spec;

/// <summary>virtio-console feature bits (virtio 1.2 §5.3.3).</summary>
internal static class ConsoleFeature
{
    public const int Size = 0;
    public const int Multiport = 1;
    public const int EmergWrite = 2;
}
